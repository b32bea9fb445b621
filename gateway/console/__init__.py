"""The web console at ``/console`` (issue 15): sign-in, search, order timelines, queues, alerts, dry runs."""
