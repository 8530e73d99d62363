"""strategy: strategy_assignments, and the assignment on collection_cases (issue 13)

Revision ID: b7e1c2d3a4f5
Revises: 904dcf5b46e3
Create Date: 2026-12-01 16:00:00

"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'b7e1c2d3a4f5'
down_revision: str | Sequence[str] | None = '904dcf5b46e3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The columns added to collection_cases: (name, type), all nullable.
CASE_COLUMNS = (
    ('propensity_bps', sa.Integer()),
    ('score_band', sqlmodel.sql.sqltypes.AutoString(length=20)),
    ('model_version', sqlmodel.sql.sqltypes.AutoString(length=40)),
    ('treatment', sqlmodel.sql.sqltypes.AutoString(length=32)),
    ('experiment_id', sqlmodel.sql.sqltypes.AutoString(length=40)),
    ('strategy_arm', sqlmodel.sql.sqltypes.AutoString(length=20)),
)


def upgrade() -> None:
    op.create_table('strategy_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('episode_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('loan_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('propensity_bps', sa.Integer(), nullable=True),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('score_band', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('treatment', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('experiment_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('arm', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('policy_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('episode_id'),
    )
    op.create_index(op.f('ix_strategy_assignments_workflow_id'), 'strategy_assignments', ['workflow_id'], unique=False)
    op.create_index(op.f('ix_strategy_assignments_loan_id'), 'strategy_assignments', ['loan_id'], unique=False)
    with op.batch_alter_table('collection_cases') as batch:
        for name, kind in CASE_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('collection_cases') as batch:
        for name, _ in reversed(CASE_COLUMNS):
            batch.drop_column(name)
    op.drop_index(op.f('ix_strategy_assignments_loan_id'), table_name='strategy_assignments')
    op.drop_index(op.f('ix_strategy_assignments_workflow_id'), table_name='strategy_assignments')
    op.drop_table('strategy_assignments')
