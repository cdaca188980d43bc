package gate

names := [u.name | some u in input.users]

admins := {u.name | some u in input.users; "admin" in u.roles}

by_team := {team: members |
	some u in input.users
	team := u.team
	members := [m.name | some m in input.users; m.team == team]
}

count_by_team := {t: count(ms) | some t, ms in by_team}
