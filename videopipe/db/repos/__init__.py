"""The repositories: every query lives here, one module per feature. A function that touches rows a tenant
owns takes the tenant and sees only that tenant's rows: another tenant's row is indistinguishable from one
that does not exist (`NotFound`). Functions take an open `Session`; the services own the transactions."""
