"""The built-in ``mysql`` source: one mysqldump per database (MySQL or
MariaDB).

Registered through the "inkind" entry-point group, exactly like a
third-party plugin; the source is imported only when a config uses it.
"""

import inkind


@inkind.hookimpl
def inkind_source_types() -> dict[str, str]:
    return {"mysql": "inkind_mysql.source:MysqlSource"}
