DROP TABLE rate_counters;
