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


def extract_outlook(data: bytes, source: str) -> ExtractedDocument:
    """An Outlook .msg (through extract-msg): the same headers and body text as an .eml."""
    from legaldoc.pipeline.extract.containers import open_msg

    message = open_msg(data, source)
    try:
        fields = {"Subject": message.subject, "From": message.sender, "To": message.to, "Cc": message.cc,
                  "Date": message.date.isoformat() if message.date else None}  # fmt: skip
        body = message.body or ""
        if not body.strip() and message.htmlBody:
            html = message.htmlBody
            body = html_to_text(html.decode("utf-8", "replace") if isinstance(html, bytes) else str(html))
        attachments = [a.longFilename or a.shortFilename for a in message.attachments if a.longFilename or a.shortFilename]
    except Exception as exc:  # extract-msg raises many kinds for a damaged file; all mean the same
        raise DataError(f"{source} is an Outlook .msg file that cannot be decoded ({type(exc).__name__}: {exc})",
                        hint="re-export it from Outlook, or save it as .eml") from None  # fmt: skip
    finally:
        message.close()
    header_lines = [f"{name}: {' '.join(str(value).split())}" for name, value in fields.items() if value]
    if not header_lines and not body.strip():
        raise DataError(f"{source} is an Outlook message with no headers and no text")
    text = clean_text("\n".join(header_lines) + "\n\n" + clean_text(body))
    metadata: dict = {"subject": fields["Subject"], "from": fields["From"], "date": fields["Date"]}
    if attachments:
        metadata["attachments"] = attachments
    return assemble("email", [(text, False, "email")], {k: v for k, v in metadata.items() if v})
