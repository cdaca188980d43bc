package gate

owner := object.get(input, ["metadata", "labels", "owner"], "nobody")

allow if {
	print("owner is", owner)
	endswith(lower(owner), "@acme.io")
	not contains(owner, "+")
}

message := sprintf("%s: %v", [owner, allow])
