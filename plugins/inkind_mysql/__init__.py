"""The built-in ``mysql`` source: one mysqldump per database (MySQL or
MariaDB).

Registered through the "inkind" entry-point group, exactly like a
third-party plugin.
"""

import inkind
from inkind_mysql.source import MysqlSource


@inkind.hookimpl
def inkind_source_types():
    return [MysqlSource]
