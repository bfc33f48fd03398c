"""What is specific to AWS. The sync core calls these entry points, and nothing here imports
Dagster:

- `connection.connection_for(account)`: the role ARN and external ID checked before any AWS call;
  `refuse_duplicate` / `refuse_shared_external_id`: a connection that must not sync.
- `cost_explorer.fetch_window(client_for, connection, window, metric, ...)`: every
  `GetCostAndUsage` page of one account's window, counted and priced, kept as sent.
- `pages.cost_lines(pages, window)`: the stored pages, checked, as exact cost lines.
- `probe.probe_connection(...)`: the PULSE app's "Test connection" (one paid request).
"""
