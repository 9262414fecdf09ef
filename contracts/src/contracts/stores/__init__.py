"""The billing store's implementations: Postgres (:mod:`.postgres`, the cluster) and
SQLite (:mod:`.sqlite`, ``cloudpbx dev``), both :class:`.sql.SqlBillingStore` on their
own driver. The only place in ``contracts`` that imports a database driver."""
