"""Constants the session's fixtures (conftest.py) and helper modules share; a module of its own, because `conftest` is
ambiguous to import once a test directory (tests/fleet) has a conftest too."""

LOOPBACK = "127.0.0.1"
ALL_GRPC = """kill_switch: false
services:
  market_analysis: {grpc: 100}
  causal_analysis: {grpc: 100}
  backtesting: {grpc: 100}
  analysis_coordinator: {grpc: 100}
"""
