"""What counts as a secret in plain configuration: one definition for the settings and the policy pack.

Names are judged by their words (split on `_`, `-` and `.`), not by substrings, so ordinary ML settings
such as TOKENIZERS_PARALLELISM or MAX_NEW_TOKENS pass while HF_TOKEN, AWS_ACCESS_KEY_ID or DB_PASSWORD do
not. Values are judged by shapes that are credentials whatever the name: AWS access key IDs, private keys,
and connection strings with a password (`scheme://user:password@host`).

Standard library only: the policy pack ships a copy of this file (checked identical by a test).
"""

from __future__ import annotations

import re
from itertools import pairwise

# A name holding one of these words names a secret.
SECRET_WORDS = frozenset({
    "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE", "PWD", "TOKEN", "CREDENTIAL", "CREDENTIALS",
    "APIKEY", "PRIVATEKEY", "ACCESSKEY", "SECRETKEY", "AUTHDATA", "SESSIONKEY", "CLIENTSECRET",
})
# Words that name a secret only in pairs: API_KEY, ACCESS_KEY(_ID), PRIVATE_KEY, AUTH_DATA, ...
SECRET_PAIRS = frozenset({
    ("API", "KEY"), ("ACCESS", "KEY"), ("PRIVATE", "KEY"), ("SECRET", "KEY"), ("SIGNING", "KEY"),
    ("ENCRYPTION", "KEY"), ("AUTH", "DATA"), ("SESSION", "KEY"), ("CLIENT", "SECRET"),
})
# Whole names that hold secrets without any of the words above.
SECRET_NAMES = frozenset({"PGPASSWORD", "MYSQL_PWD", "ECS_ENGINE_AUTH_DATA"})
# A name ending in one of these names a property of a secret (its lifetime, its ARN, its file), not the secret:
# TOKEN_TTL_SECONDS, DB_PASSWORD_FILE, API_KEY_SECRET_ARN, X-aws-ec2-metadata-token-ttl-seconds.
NOT_SECRET_SUFFIXES = frozenset({
    "TTL", "SECONDS", "COUNT", "LENGTH", "LEN", "LIMIT", "SIZE", "TYPE", "ARN", "FILE", "PATH", "ENDPOINT",
    "URL", "URI", "NAME", "PARAMETER", "HEADER", "ENABLED",
})
# Model vocabulary, not credentials: PAD_TOKEN_ID, EOS_TOKEN, SPECIAL_TOKEN.
MODEL_TOKEN_QUALIFIERS = frozenset({"PAD", "BOS", "EOS", "UNK", "SEP", "CLS", "MASK", "SPECIAL", "START", "END",
                                    "STOP"})

ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA|A3T[A-Z0-9])[A-Z0-9]{16}\b")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# scheme://user:password@host - a password in a URL (database, broker, proxy URLs); the user may be empty
# (redis://:password@host). A password that is a shell reference ($VAR, ${VAR}, $(...)) is filled in elsewhere.
URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]*:(?!\$)[^/\s@]+@[^\s/]+", re.IGNORECASE)
# NAME=value or NAME: value in scripts and command lines, with NAME judged by `is_secret_name`.
ASSIGNMENT = re.compile(r"(?:--)?\b([A-Za-z][A-Za-z0-9_.-]*)\s*[=:]\s*(\S+)")
# Values that are shell references, not secrets: $(...), ${VAR}, $VAR.
SHELL_REFERENCE = re.compile(r"^[\"']?\$[({A-Za-z_]")

_WORD_SPLIT = re.compile(r"[_.\-]+|(?<=[a-z])(?=[A-Z])")


def name_words(name: str) -> list[str]:
    """`hfToken` -> [HF, TOKEN]; `AWS_ACCESS_KEY_ID` -> [AWS, ACCESS, KEY, ID]."""
    return [word.upper() for word in _WORD_SPLIT.split(name) if word]


def is_secret_name(name: str) -> bool:
    """True when an environment variable or key of this name would hold a credential."""
    if name.upper() in SECRET_NAMES:
        return True
    words = name_words(name)
    if not words or words[-1] in NOT_SECRET_SUFFIXES:
        return False
    for index, word in enumerate(words):
        if word == "TOKEN" and index and words[index - 1] in MODEL_TOKEN_QUALIFIERS:
            continue
        if word in SECRET_WORDS:
            return True
    return any(pair in SECRET_PAIRS for pair in pairwise(words))


def secret_value_kind(value: str) -> str | None:
    """What credential a value is by its shape alone, or None."""
    if ACCESS_KEY_ID.search(value):
        return "an AWS access key ID"
    if PRIVATE_KEY.search(value):
        return "a private key"
    if URL_CREDENTIALS.search(value):
        return "a password in a URL (scheme://user:password@host)"
    return None


def secrets_in_text(text: str) -> list[str]:
    """Credentials in free text (user data, a command line): what each is, never the secret itself."""
    found = []
    kind = secret_value_kind(text)
    if kind:
        found.append(kind)
    for match in ASSIGNMENT.finditer(text):
        name, value = match.group(1), match.group(2)
        if is_secret_name(name) and not SHELL_REFERENCE.match(value):
            found.append(f"a value assigned to {name}")
    return found
