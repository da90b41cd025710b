"""Reading and writing at the edges: frames (read-only), the journal, the state file, NINA's AF reports."""
