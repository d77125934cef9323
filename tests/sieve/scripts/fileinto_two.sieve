require "fileinto";
fileinto "Work";
fileinto "Archive";
