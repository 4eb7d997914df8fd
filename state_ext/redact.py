"""Secrets never reach a log line, whoever writes it: state-ext, botocore, azure, gcsfs...

Also the redaction of messages state-ext writes itself: ``redact_uri`` (a URI's password
and secret-looking query values) and ``hide_secrets`` (a backend's own credentials).

Two kinds of protection, applied by one ``logging.Filter`` on the root handlers (so SDK
loggers at every level and both log formats pass through it):

* the resolved credentials themselves: every sensitive setting state-ext resolves
  (``ProjectSettings.get``), the password of a URI's user info, and the credential
  variables of the SDKs' own chains found in the environment (AWS keys and session
  token, Azure connection strings and keys, a Google service-account key). Each is
  replaced by ``***`` wherever it appears, as given and URL-encoded;
* the shapes credentials travel in on the wire, for values nobody told us about:
  ``Authorization`` headers, AWS signature ``Credential=`` scopes and security tokens,
  ``AccountKey=``/``SharedAccessSignature=``/``sig=`` fields and PEM private keys.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote

MASK = "***"
_remembered: set[str] = set()
_SHORTEST = 4  # shorter values would mask ordinary words

# Environment variables whose values are credentials, for the SDKs' default chains.
ENV_SECRETS = re.compile(
    r"(?i)^(AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|SECURITY_TOKEN)|"
    r"AZURE_(STORAGE_)?(CONNECTION_STRING|KEY|ACCOUNT_KEY|SAS_TOKEN|CLIENT_SECRET)|"
    r".*(PASSWORD|SECRET|TOKEN|ACCESS_KEY|ACCOUNT_KEY|PRIVATE_KEY|CREDENTIALS_JSON|"
    r"CONNECTION_STRING).*)$")
# Values that name a setting's state rather than a secret (FOO_TOKEN=true): never masked.
_PLAIN = {"true", "false", "none", "null", "yes", "no", "on", "off"}
_SHAPES = [
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*b?['\"]?)[^'\",}\n]+"), r"\1" + MASK),
    (re.compile(r"(?i)(credential=)[^,\s'\"&]+"), r"\1" + MASK),
    (re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+"), r"\1" + MASK),
    (re.compile(r"(?i)(AccountKey|SharedAccessSignature|sig|signature)=[^;&\s'\"]+"),
     r"\1=" + MASK),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
                re.S), MASK),
    (re.compile(r"(://[^/\s:@'\"]*:)[^@\s'\"]+(@)"), r"\1" + MASK + r"\2"),
]


def remember(*values) -> None:
    """Mask these values (and their URL-encoded forms) in every later log line."""
    for value in values:
        if not isinstance(value, str) or len(value) < _SHORTEST or value.lower() in _PLAIN:
            continue
        _remembered.update(v for v in (value, quote(value, safe=""), unquote(value))
                           if len(v) >= _SHORTEST)
        for field in re.findall(r"(?i)(?:AccountKey|SharedAccessSignature)=([^;]+)", value):
            remember(field)


def remember_environment(environ) -> None:
    """Remember the credentials the SDKs' own chains would read from ``environ``."""
    remember(*(value for name, value in environ.items() if ENV_SECRETS.match(name)))
    for name, value in environ.items():
        if "private_key" in value and name.endswith(("JSON", "CREDENTIALS")):
            remember(*re.findall(r'"private_key(?:_id)?"\s*:\s*"([^"]+)"', value))


def scrub(text: str) -> str:
    for secret in sorted(_remembered, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


class LogFilter(logging.Filter):
    """Rewrites each record's message with ``scrub``; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not format: leave it to logging
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install() -> None:
    """Put the filter on every handler of the root logger (where every logger ends up)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LogFilter) for f in handler.filters):
            handler.addFilter(LogFilter())


_SENSITIVE_QUERY = re.compile(r"(?i)([?&;](?:[^=&;]*(?:password|passwd|pwd|secret|token|key|"
                              r"signature|sig|credential)[^=&;]*)=)[^&;#]*")


def redact_uri(uri: str) -> str:
    """Hide secrets in a URI: the password of ``user:secret@``, and secret-looking query values.

    Secrets may contain ``/`` (AWS keys often do), which ends ``urlsplit``'s netloc early,
    so the userinfo is taken up to the last ``@`` of the whole URI instead. For ``s3://``
    the user part is an access key ID and is hidden too.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    if "@" in rest:
        userinfo, _, after = rest.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if scheme.lower() == "s3":
            user = "***"
        rest = f"{user}:***@{after}" if has_password else f"{user}@{after}"
    return _SENSITIVE_QUERY.sub(r"\1***", f"{scheme}://{rest}")


_FIELDS = re.compile(r"(?i)(AccountKey|SharedAccessSignature|sig)=[^;&\s]+")


def hide_secrets(text: str, secrets: list[str]) -> str:
    """An object store's error line without its credentials (longest first), without
    Azure's key and signature fields, on one line."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    text = _FIELDS.sub(r"\1=" + MASK, text)
    return " ".join(text.split())
