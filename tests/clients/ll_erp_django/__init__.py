"""A small Django app over the demo ERP tables (unmanaged models: the schema comes from sql/demo/erp.sql)."""
