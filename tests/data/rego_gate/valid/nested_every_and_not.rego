package gate

ok if {
	every team in input.teams {
		every m in team.members {
			m.active
		}
		not team.frozen
	}
}

bad_teams contains t.name if {
	some t in input.teams
	not every_member_active(t)
}

every_member_active(t) if {
	every m in t.members {
		m.active
	}
}
