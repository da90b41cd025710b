"""Reading and writing at the edges: frames (read-only), a frame file through the pipeline
(``assess``), the journal, the state file, NINA's AF reports."""
