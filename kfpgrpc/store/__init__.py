"""SQLite persistence: the database (writer + readers), the schema and one module per resource."""
