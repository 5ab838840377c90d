"""Test and benchmark support that ships with capplan (like ``prefect.testing``): real
servers started on 127.0.0.1 and fixtures shaped like what real exporters emit. Used by
the test suite and by ``bench/``; nothing here is needed to run capplan."""
