"""The vocabulary every layer shares: the events a job yields and the errors a client sees."""
