"""The discrete toy of section 4 and Appendix E, computed exactly."""
