allow if input.user == "alice"
