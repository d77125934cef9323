require ["variables","fileinto","regex"];
if header :regex "x-spam-status" "score=([0-9]+)\\.([0-9])" { fileinto "S${1}_${2}"; }
