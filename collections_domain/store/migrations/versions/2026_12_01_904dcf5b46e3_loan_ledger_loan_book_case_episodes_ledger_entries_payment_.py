"""loan ledger: loan book, case episodes, ledger entries, payment value dates and reversals

Revision ID: 904dcf5b46e3
Revises: c8f18ca9377a
Create Date: 2026-12-01 11:07:55.165583

"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString)
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '904dcf5b46e3'
down_revision: str | Sequence[str] | None = 'c8f18ca9377a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ledger_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('record_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('episode_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('loan_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('entry', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('ref_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('principal_minor', sa.BigInteger(), nullable=False),
    sa.Column('interest_minor', sa.BigInteger(), nullable=False),
    sa.Column('fees_minor', sa.BigInteger(), nullable=False),
    sa.Column('penalty_minor', sa.BigInteger(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries')),
    sa.UniqueConstraint('record_key', name=op.f('uq_ledger_entries_record_key'))
    )
    op.create_index(op.f('ix_ledger_entries_episode_id'), 'ledger_entries', ['episode_id'], unique=False)
    op.create_index(op.f('ix_ledger_entries_loan_id'), 'ledger_entries', ['loan_id'], unique=False)
    op.create_index(op.f('ix_ledger_entries_workflow_id'), 'ledger_entries', ['workflow_id'], unique=False)
    op.create_table('loan_instalments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('loan_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('instalment_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('principal_minor', sa.BigInteger(), nullable=False),
    sa.Column('interest_minor', sa.BigInteger(), nullable=False),
    sa.Column('fees_minor', sa.BigInteger(), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('forwarded_to', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['loan_id'], ['loans.id'], name=op.f('fk_loan_instalments_loan_id_loans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loan_instalments')),
    sa.UniqueConstraint('loan_id', 'instalment_id', name=op.f('uq_loan_instalments_loan_id_instalment_id'))
    )
    op.create_index(op.f('ix_loan_instalments_due_date'), 'loan_instalments', ['due_date'], unique=False)
    op.create_index(op.f('ix_loan_instalments_loan_id'), 'loan_instalments', ['loan_id'], unique=False)
    op.create_table('loan_payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('loan_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('payment_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reversed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reversal_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('reversal_reason', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('case_episode_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('recovery', sa.Boolean(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.ForeignKeyConstraint(['loan_id'], ['loans.id'], name=op.f('fk_loan_payments_loan_id_loans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loan_payments')),
    sa.UniqueConstraint('loan_id', 'payment_id', name=op.f('uq_loan_payments_loan_id_payment_id'))
    )
    op.create_index(op.f('ix_loan_payments_loan_id'), 'loan_payments', ['loan_id'], unique=False)
    op.add_column('collection_cases', sa.Column('episode_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
    op.add_column('collection_cases', sa.Column('opening_source', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
    op.add_column('collection_cases', sa.Column('opening_rule', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True))
    op.add_column('collection_cases', sa.Column('reopened_from', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
    op.add_column('collection_cases', sa.Column('portfolio', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.add_column('collection_cases', sa.Column('region', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True))
    op.add_column('collection_cases', sa.Column('days_past_due', sa.Integer(), nullable=True))
    op.add_column('collection_cases', sa.Column('max_days_past_due', sa.Integer(), nullable=True))
    op.add_column('collection_cases', sa.Column('anchor_due_date', sa.Date(), nullable=True))
    op.add_column('collection_cases', sa.Column('principal_minor', sa.BigInteger(), nullable=True))
    op.add_column('collection_cases', sa.Column('interest_minor', sa.BigInteger(), nullable=True))
    op.add_column('collection_cases', sa.Column('fees_minor', sa.BigInteger(), nullable=True))
    op.add_column('collection_cases', sa.Column('penalty_minor', sa.BigInteger(), nullable=True))
    op.add_column('collection_cases', sa.Column('credit_minor', sa.BigInteger(), nullable=True))
    op.add_column('collection_cases', sa.Column('written_off_minor', sa.BigInteger(), nullable=True))
    op.add_column('collection_cases', sa.Column('waived_minor', sa.BigInteger(), nullable=True))
    # One loan may now have several cases (cured, then behind again; re-opened by a reversal):
    # a case is its first run (episode), no longer its loan and due date. Batch mode: SQLite too.
    with op.batch_alter_table('collection_cases') as batch:
        batch.drop_constraint(op.f('uq_collection_cases_workflow_id_oldest_due_date'), type_='unique')
        batch.create_unique_constraint(op.f('uq_collection_cases_episode_id'), ['episode_id'])
    # Loans written before the loan book were the demo's Home Credit loans: their defaults below.
    op.add_column('loans', sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                     server_default='Asia/Shanghai'))
    op.add_column('loans', sa.Column('jurisdiction', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False,
                                     server_default='CN'))
    op.add_column('loans', sa.Column('region', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True))
    op.add_column('loans', sa.Column('portfolio', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.add_column('loans', sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False,
                                     server_default='active'))
    op.add_column('loans', sa.Column('oldest_unpaid_due_date', sa.Date(), nullable=True))
    op.add_column('loans', sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f('ix_loans_oldest_unpaid_due_date'), 'loans', ['oldest_unpaid_due_date'], unique=False)
    op.add_column('payments', sa.Column('value_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('payments', sa.Column('episode_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
    op.add_column('payments', sa.Column('reversed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('payments', sa.Column('reversal_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.add_column('payments', sa.Column('reversal_reason', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))


def downgrade() -> None:
    op.drop_column('payments', 'reversal_reason')
    op.drop_column('payments', 'reversal_id')
    op.drop_column('payments', 'reversed_at')
    op.drop_column('payments', 'episode_id')
    op.drop_column('payments', 'value_at')
    op.drop_index(op.f('ix_loans_oldest_unpaid_due_date'), table_name='loans')
    op.drop_column('loans', 'updated_at')
    op.drop_column('loans', 'oldest_unpaid_due_date')
    op.drop_column('loans', 'status')
    op.drop_column('loans', 'portfolio')
    op.drop_column('loans', 'region')
    op.drop_column('loans', 'jurisdiction')
    op.drop_column('loans', 'timezone')
    with op.batch_alter_table('collection_cases') as batch:
        batch.drop_constraint(op.f('uq_collection_cases_episode_id'), type_='unique')
        batch.create_unique_constraint(op.f('uq_collection_cases_workflow_id_oldest_due_date'), ['workflow_id', 'oldest_due_date'])
    op.drop_column('collection_cases', 'waived_minor')
    op.drop_column('collection_cases', 'written_off_minor')
    op.drop_column('collection_cases', 'credit_minor')
    op.drop_column('collection_cases', 'penalty_minor')
    op.drop_column('collection_cases', 'fees_minor')
    op.drop_column('collection_cases', 'interest_minor')
    op.drop_column('collection_cases', 'principal_minor')
    op.drop_column('collection_cases', 'anchor_due_date')
    op.drop_column('collection_cases', 'max_days_past_due')
    op.drop_column('collection_cases', 'days_past_due')
    op.drop_column('collection_cases', 'region')
    op.drop_column('collection_cases', 'portfolio')
    op.drop_column('collection_cases', 'reopened_from')
    op.drop_column('collection_cases', 'opening_rule')
    op.drop_column('collection_cases', 'opening_source')
    op.drop_column('collection_cases', 'episode_id')
    op.drop_index(op.f('ix_loan_payments_loan_id'), table_name='loan_payments')
    op.drop_table('loan_payments')
    op.drop_index(op.f('ix_loan_instalments_loan_id'), table_name='loan_instalments')
    op.drop_index(op.f('ix_loan_instalments_due_date'), table_name='loan_instalments')
    op.drop_table('loan_instalments')
    op.drop_index(op.f('ix_ledger_entries_workflow_id'), table_name='ledger_entries')
    op.drop_index(op.f('ix_ledger_entries_loan_id'), table_name='ledger_entries')
    op.drop_index(op.f('ix_ledger_entries_episode_id'), table_name='ledger_entries')
    op.drop_table('ledger_entries')
