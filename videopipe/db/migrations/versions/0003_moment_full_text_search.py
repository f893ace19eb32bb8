"""moment full-text search: SQLite FTS5 table kept in step by triggers; PostgreSQL tsvector column + GIN index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_TRIGGERS = """
CREATE TRIGGER moments_fts_insert AFTER INSERT ON moments BEGIN
  INSERT INTO moments_fts(rowid, caption, screen_text, speech)
  VALUES (new.id, new.caption, new.screen_text, new.speech);
END;
CREATE TRIGGER moments_fts_delete AFTER DELETE ON moments BEGIN
  INSERT INTO moments_fts(moments_fts, rowid, caption, screen_text, speech)
  VALUES ('delete', old.id, old.caption, old.screen_text, old.speech);
END;
CREATE TRIGGER moments_fts_update AFTER UPDATE ON moments BEGIN
  INSERT INTO moments_fts(moments_fts, rowid, caption, screen_text, speech)
  VALUES ('delete', old.id, old.caption, old.screen_text, old.speech);
  INSERT INTO moments_fts(rowid, caption, screen_text, speech)
  VALUES (new.id, new.caption, new.screen_text, new.speech);
END;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE moments_fts USING fts5(caption, screen_text, speech, content='moments', "
            "content_rowid='id', tokenize='porter unicode61')"
        )
        for statement in _SQLITE_TRIGGERS.strip().split("END;"):
            if statement.strip():
                op.execute(statement + "END;")
        op.execute("INSERT INTO moments_fts(moments_fts) VALUES ('rebuild')")
    else:
        op.execute(
            "ALTER TABLE moments ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', "
            "coalesce(caption, '') || ' ' || coalesce(screen_text, '') || ' ' || coalesce(speech, ''))) STORED"
        )
        op.execute("CREATE INDEX ix_moments_tsv ON moments USING gin (tsv)")
    op.create_index("ix_moment_vectors_model_moment_id", "moment_vectors", ["model", "moment_id"])


def downgrade() -> None:
    op.drop_index("ix_moment_vectors_model_moment_id", "moment_vectors")
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS moments_fts_{name}")
        op.execute("DROP TABLE IF EXISTS moments_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_moments_tsv")
        op.execute("ALTER TABLE moments DROP COLUMN IF EXISTS tsv")
