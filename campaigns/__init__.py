"""Long runs that report: the benchmark (``make bench``), its report, the fuzz
campaign (``make fuzz``)."""
