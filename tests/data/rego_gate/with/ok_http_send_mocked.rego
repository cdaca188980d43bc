package gate

inner if http.send({"method": "GET", "url": "https://x"}).status_code == 200

allow if inner with http.send as {"status_code": 200}
