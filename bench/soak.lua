-- bench/soak's requests: GET /users/<n> and POST /echo with a 2 KiB JSON
-- body, alternately.
local post_body = '{"data":"' .. string.rep("x", 2048 - 11) .. '"}'
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("POST", "/echo", {["Content-Type"] = "application/json"}, post_body)
  end
  return wrk.format("GET", "/users/" .. (n % 1000))
end
