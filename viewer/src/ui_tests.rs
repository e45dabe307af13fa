//! Headless tests that click.
