"""Board data files (`<board>.json`): part, clock, resource budget, hls4ml backend; read by flows/boards.py.

A package so that the board files install with fireflow (package data), also in a non-editable install.
"""
