"""The rules a case follows: the policy and its files, the ladder, the calendar, the compliance gate, plan limits, message templates, input validation."""
