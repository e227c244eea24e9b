"""The files a run and a sweep leave behind: one owner per format."""
