"""Email through SMTP (the standard library's smtplib), configured by environment at the time of sending.

`BULKOPS_SMTP_HOST` (unset: email is off), `BULKOPS_SMTP_PORT` (25), `BULKOPS_SMTP_FROM`
(`bulkops@localhost`), `BULKOPS_SMTP_USER` and `BULKOPS_SMTP_PASSWORD` (log in when set),
`BULKOPS_SMTP_STARTTLS` (`true` to upgrade the connection), `BULKOPS_SMTP_TIMEOUT` (10 s).
A refusal the server means for good (5xx) is permanent; anything else (connection refused or
lost, timeouts, 4xx) is worth a retry later.
"""

from __future__ import annotations

import os
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from types import TracebackType


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "bulkops@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0


def smtp_settings() -> SmtpSettings | None:
    """The SMTP server from the environment, read now; None when `BULKOPS_SMTP_HOST` is not set."""
    host = os.environ.get("BULKOPS_SMTP_HOST", "").strip()
    if not host:
        return None
    port = os.environ.get("BULKOPS_SMTP_PORT", "").strip()
    timeout = os.environ.get("BULKOPS_SMTP_TIMEOUT", "").strip()
    return SmtpSettings(
        host=host,
        port=int(port) if port else 25,
        sender=os.environ.get("BULKOPS_SMTP_FROM", "").strip() or "bulkops@localhost",
        username=os.environ.get("BULKOPS_SMTP_USER") or None,
        password=os.environ.get("BULKOPS_SMTP_PASSWORD") or None,
        starttls=os.environ.get("BULKOPS_SMTP_STARTTLS", "").strip().lower() in ("1", "true", "yes"),
        timeout=float(timeout) if timeout else 10.0,
    )


class SendFailed(Exception):
    """One message was not sent; `permanent` when sending it again cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def message(sender: str, to: str, subject: str, body: str, *, message_id: str) -> EmailMessage:
    """A plain-text email whose Message-ID is derived from what it delivers (receivers can spot a resend)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{message_id}@bulkops>"
    msg.set_content(body)
    return msg


class Mailer:
    """One SMTP connection, opened on the first send and reopened after a failure; use as a context manager."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Mailer:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        if s.starttls:
            smtp.starttls()
        if s.username:
            smtp.login(s.username, s.password or "")
        return smtp

    def send(self, to: str, subject: str, body: str, *, message_id: str) -> None:
        """Send one message; SendFailed says why not, and whether a retry can help."""
        msg = message(self.settings.sender, to, subject, body, message_id=message_id)
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            refused = self._smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise SendFailed(f"{to} refused: {code} {_text(text)}", permanent=code >= 500) from None
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise SendFailed(f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}", permanent=exc.smtp_code >= 500) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise SendFailed(
                f"{type(exc).__name__}: {exc} ({self.settings.host}:{self.settings.port})", permanent=False
            ) from None
        if refused:
            code, text = next(iter(refused.values()))
            raise SendFailed(f"{to} refused: {code} {_text(text)}", permanent=code >= 500)

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
