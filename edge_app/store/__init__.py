"""Everything persistent: the SQLite database and its migrations, accounts and sessions, backup and export."""
