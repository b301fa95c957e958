"""Comparing finished runs: scores read from run folders (`runs`), rliable statistics
(`stats`) and the written report (`report`). Used by `python -m jlmarl.compare`."""
