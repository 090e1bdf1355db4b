"""libpq connection strings: parsed, so that a database name can be put into
one (pg_dump connects to one database), and checked for passwords, which
belong in a passfile and never in the config, the logs or the store."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

URI_PREFIXES = ("postgresql://", "postgres://")


def parse(dsn: str) -> dict[str, str]:
    """A keyword/value string or a URI as a dict of libpq keywords.

    Raises ValueError with a short reason when it does not parse.
    """
    if dsn.startswith(URI_PREFIXES):
        return _parse_uri(dsn)
    out: dict[str, str] = {}
    i, n = 0, len(dsn)
    while i < n:
        while i < n and dsn[i].isspace():
            i += 1
        if i == n:
            break
        eq = dsn.find("=", i)
        if eq < 0:
            raise ValueError(f"missing '=' after {dsn[i:].split()[0]!r}")
        key = dsn[i:eq].strip()
        i = eq + 1
        while i < n and dsn[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and dsn[i] == "'":
            i += 1
            while i < n and dsn[i] != "'":
                if dsn[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(dsn[i])
                i += 1
            if i >= n:
                raise ValueError("unterminated quoted string")
            i += 1
        else:
            while i < n and not dsn[i].isspace():
                if dsn[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(dsn[i])
                i += 1
        out[key] = "".join(value)
    return out


def _parse_uri(dsn: str) -> dict[str, str]:
    parts = urlsplit(dsn)
    out: dict[str, str] = {}
    if parts.username:
        out["user"] = unquote(parts.username)
    if parts.password is not None:
        out["password"] = unquote(parts.password)
    netloc = parts.netloc.rpartition("@")[2]
    if netloc:
        host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
        if not host:
            host, port = port, ""
        if host:
            out["host"] = unquote(host.strip("[]"))
        if port:
            out["port"] = port
    if parts.path.strip("/"):
        out["dbname"] = unquote(parts.path.lstrip("/"))
    out.update(parse_qsl(parts.query))
    return out


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(params: dict[str, str]) -> str:
    """The keyword/value form, every value quoted."""
    return " ".join(f"{k}={quote(v)}" for k, v in params.items())


def with_dbname(params: dict[str, str], dbname: str) -> str:
    return render({**params, "dbname": dbname})
