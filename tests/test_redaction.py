"""Credentials in URLs never reach a message or a saved report (issue 12, low): errors quote
store clients' messages (an S3-compatible endpoint with user:password@), and reports record
the command line."""

from __future__ import annotations

from ckptmigrate.compare import compare
from ckptmigrate.errors import CkptMigrateError, OutputError, redact_credentials
from ckptmigrate.inventory import Inventory, Scheme, VariableSpec
from ckptmigrate.render import check_dict

SECRET = "wJalrXUtnFEMI"


def test_errors_redact_url_credentials() -> None:
    error = OutputError(
        f"cannot reach the output (EndpointConnectionError: http://AKIA:{SECRET}@127.0.0.1:9/b)",
        path=f"s3://user:{SECRET}@bucket/run",
        hint="check the endpoint.",
    )
    for text in (str(error), error.render({"overwrite": "--force"})):
        assert SECRET not in text
        assert "http://***@127.0.0.1:9/b" in text
        assert "s3://***@bucket/run" in text
    plain = CkptMigrateError("no credentials here: s3://bucket/a@b", path="x@y")
    assert str(plain) == "x@y: no credentials here: s3://bucket/a@b"  # '@' after a '/' stays


def test_saved_reports_redact_the_command_line() -> None:
    inventory = Inventory("checkpoint", "c", Scheme.TF1, {"a": VariableSpec("a", (1,), "float32")})
    data = check_dict(
        compare(inventory, inventory),
        command=["ckptmigrate", "check", f"s3://k:{SECRET}@bucket/ckpt", "--target", "t"],
    )
    assert data["produced_by"]["command"][2] == "s3://***@bucket/ckpt"
    assert redact_credentials("no url here") == "no url here"
