"""The product database: tables, engine and migrations, the records workflows write, held payments, preferences, the audit."""
