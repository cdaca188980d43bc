package gate

s := strings.reverse("abc")
