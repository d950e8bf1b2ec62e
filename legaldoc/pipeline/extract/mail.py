"""E-mail (RFC 822 / .eml): headers, then the body (plain text preferred, else HTML as text)."""

from __future__ import annotations

import contextlib
import email
import email.policy
import email.utils
from email.message import EmailMessage

from legaldoc.errors import DataError
from legaldoc.models import ExtractedDocument
from legaldoc.pipeline.extract.html import html_to_text
from legaldoc.pipeline.extract.textutil import assemble, clean_text

HEADER_FIELDS = ("Subject", "From", "To", "Cc", "Date")


def _body_text(message: EmailMessage) -> str:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    plain_text = plain.get_content() if plain is not None else ""
    if plain_text.strip() and (html is None or len(plain_text.strip()) > 200):
        return plain_text
    if html is not None:
        return html_to_text(html.get_content())
    return plain_text


def extract_email(data: bytes, source: str) -> ExtractedDocument:
    try:
        message = email.message_from_bytes(data, policy=email.policy.default)
        header_lines = []
        for field in HEADER_FIELDS:
            value = message.get(field)
            if value:
                header_lines.append(f"{field}: {' '.join(str(value).split())}")
        body = _body_text(message)
    except (LookupError, ValueError, TypeError) as exc:
        raise DataError(f"{source} is an e-mail that cannot be decoded ({exc})") from exc
    if not header_lines and not body.strip():
        raise DataError(f"{source} is an e-mail with no headers and no text")
    text = clean_text("\n".join(header_lines) + "\n\n" + clean_text(body))
    metadata: dict = {"subject": message.get("Subject"), "from": message.get("From")}
    if message.get("Date"):
        with contextlib.suppress(TypeError, ValueError):
            metadata["date"] = email.utils.parsedate_to_datetime(str(message["Date"])).isoformat()
    attachments = [part.get_filename() for part in message.iter_attachments() if part.get_filename()]
    if attachments:
        metadata["attachments"] = attachments
    return assemble("email", [(text, False, "email")], {k: v for k, v in metadata.items() if v})
