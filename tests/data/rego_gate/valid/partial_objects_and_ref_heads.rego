package gate

quotas[team] := limit if {
	some team, limit in input.quotas
	limit > 0
}

report.teams[team] := count(members) if {
	some team, members in input.teams
}

report.total := count(input.teams)

report.flags contains "empty" if count(input.teams) == 0
