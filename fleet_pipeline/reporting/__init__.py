"""Reporting: the dbt models as assets, the BI serving copy and the HTML report."""
