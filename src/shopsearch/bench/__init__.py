"""Speed benchmarks behind ``shopsearch bench``: each measures shopsearch beside the raw libraries
in one run and writes a JSON report."""
