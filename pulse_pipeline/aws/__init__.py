"""What is specific to AWS. The sync core calls these entry points, and nothing here imports
Dagster:

- `connection.connection_for(account)`: the role ARN and external ID checked before any AWS call;
  `refuse_duplicate` / `refuse_shared_external_id`: a connection that must not sync.
- `cost_explorer.fetch_window(client_for, connection, window, metric, ...)`: every
  `GetCostAndUsage` page of one account's window (`requests.py`: which requests, with the
  metrics of `metrics.py`), counted and priced, kept as sent.
- `pages.cost_lines(pages, window)`: the stored pages, checked, as exact cost lines per linked
  account, service and record type.
- `focus.py`: AWS services and record types in FOCUS terms, for the `focus_costs` view.
- `probe.probe_connection(...)`: the PULSE app's "Test connection".
"""
