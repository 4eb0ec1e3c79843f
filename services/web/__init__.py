"""The web service: the browser UI (server-rendered pages, htmx, uPlot charts, live updates over
Server-Sent Events), a gRPC client of the run, query, artifact and hpo services. It never opens
PostgreSQL, Redis or S3."""
