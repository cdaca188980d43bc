package gate

deny if {
	not input.users[name] == "root"
}

allowed_names := {"alice"}
