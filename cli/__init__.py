"""The `olmo3-flow` command line (installed as `olmo3_cli`) and the local service supervisor."""
