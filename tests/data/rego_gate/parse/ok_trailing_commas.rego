package gate

roles := {
	"admin",
	"viewer",
}

weights := [
	1,
	2,
]

allow if input.role in roles
