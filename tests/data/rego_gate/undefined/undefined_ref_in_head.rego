package gate

decision := {"allowed": allowed}
