"""The ops commands: instances, dead letters, trace, tables, flush, compact, config."""
