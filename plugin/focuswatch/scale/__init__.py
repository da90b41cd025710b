"""Many frames at once: worker pools (process or Dask), per-frame jobs, the long-term archive."""
