"""The object store's pure helpers: credentials redacted from every URL it names."""

from __future__ import annotations

from modelyard.store.storage import redact


def test_credentials_never_show_in_urls() -> None:
    assert redact("http://AKIAEXAMPLE@s3.local:9000") == "http://***@s3.local:9000"
    assert redact("postgresql://user:secret@db/x") == "postgresql://user:***@db/x"
    assert "tok" not in redact("see https://tok@example.com/path and http://a:b@c")
