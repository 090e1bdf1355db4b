"""Data and checks shared by the mysql tests (a uniquely named module: every
test folder has its own conftest)."""

from __future__ import annotations

from dbservers import MARIA_BACKUP_PASSWORD as BACKUP_PASSWORD
from dbservers import MARIA_BACKUP_USER as BACKUP_USER
from dbservers import MariaServer

__all__ = ["BACKUP_PASSWORD", "BACKUP_USER", "SAMPLE", "table_contents"]

SAMPLE = """
CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, name varchar(40), photo blob,
                    attrs json, price decimal(10,2), added datetime(3));
INSERT INTO items (name, photo, attrs, price, added)
  SELECT CONCAT('item ', seq), UNHEX(CONCAT(MD5(seq), '00FF')), JSON_OBJECT('n', seq),
         seq / 3, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq MINUTE
  FROM seq_1_to_300;
CREATE TABLE orders (id int PRIMARY KEY, item int, qty int, note text,
                     FOREIGN KEY (item) REFERENCES items(id)) ENGINE=InnoDB;
INSERT INTO orders SELECT seq, seq % 300 + 1, seq % 7, REPEAT('n', seq % 50) FROM seq_1_to_500;
CREATE TABLE log (at timestamp NOT NULL DEFAULT '2024-01-01 00:00:00', what varchar(100)) ENGINE=MyISAM;
INSERT INTO log (what) VALUES ('one'), ('two');
CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10;
CREATE TRIGGER upper_name BEFORE INSERT ON items FOR EACH ROW SET NEW.name = UPPER(NEW.name);
CREATE PROCEDURE add_log(w varchar(100)) INSERT INTO log (what) VALUES (w);
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DO DELETE FROM log WHERE 0;
"""


def table_contents(srv: MariaServer, db: str) -> dict[str, str]:
    """Every table's rows in a fixed order, and the routines, triggers and
    events by name."""
    tables = srv.sql(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' "
        "AND table_type = 'BASE TABLE' ORDER BY 1"
    ).split()
    out = {t: srv.sql(f"SELECT * FROM `{t}` ORDER BY 1, 2", db) for t in tables}
    out["routines"] = srv.sql(
        f"SELECT routine_name FROM information_schema.routines WHERE routine_schema = '{db}'"
    )
    out["triggers"] = srv.sql(
        f"SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = '{db}'"
    )
    out["events"] = srv.sql(f"SELECT event_name FROM information_schema.events WHERE event_schema = '{db}'")
    out["views"] = (
        srv.sql("SELECT * FROM cheap ORDER BY id", db) if "cheap" in srv.sql("SHOW TABLES", db) else ""
    )
    return out
